"""A question-answering app over the lab's own documentation, for MLflow 3's GenAI workflow.

`make genai` (`lab-job genai run`) takes it through the lab the way a team takes an LLM app:
the answer prompt from the prompt registry (by alias), retrieval with a small embedding model
whose weights ship in a Python package, every call traced, an evaluation with code-based
scorers, the app logged as a model, registered, promoted and served by the model API.
No LLM service is needed: a templated, extractive answer stands in for one unless
OPENAI_API_KEY is set (generate.py). docs/genai-workshop.md walks through it.
"""

# The names the workflow gives to what it creates in the lab (one place).
APP_MODEL = "docs-qa"  # registered model, served at /models/docs-qa/invocations
EXPERIMENT = "docs-qa"  # runs, traces and evaluations
PROMPT = "docs-qa-answer"  # the answer prompt in the prompt registry
PROMPT_ALIAS = "production"  # the prompt version the app is built with
