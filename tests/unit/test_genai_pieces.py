"""The GenAI workflow's pure pieces: documents into passages, the prompt's variables, the index,
the offline answer and the scorers (no lab; WordLlama's packaged weights, loaded offline)."""

from __future__ import annotations

import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.genai import corpus, embedding, evaluation, generate, prompt
from mlflow_lab.genai.app import DocsQA
from mlflow_lab.genai.index import Index


@pytest.fixture(autouse=True, scope="module")
def traces_stay_here(tmp_path_factory):
    """The app's traced calls go to a throwaway store, not MLflow's default ./mlflow.db and ./mlruns."""
    import mlflow

    previous, folder = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None, tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        yield
    mlflow.set_tracking_uri(previous)


DOC = """# Backups

## Restoring

Run `make restore FILE=backups/lab.tar` on a running lab. It refuses a lab with runs.

```sh
# not a heading: a comment in a code block
make restore FILE=backups/lab.tar
```

## Empty

## Users

Add accounts with make users. Each attendee gets a password.
"""


def test_markdown_is_cut_into_sections_with_code_blocks_kept_whole():
    passages = corpus.split_markdown("operations.md", DOC)
    assert [p.title for p in passages] == ["Restoring", "Users"]  # empty sections are dropped
    restoring = passages[0]
    assert "# not a heading" in restoring.text and restoring.anchor == "operations.md#restoring"
    assert restoring.for_embedding.startswith("operations Restoring\n")


def test_a_long_section_is_cut_at_paragraphs():
    text = "## Long\n\n" + "\n\n".join(f"Paragraph {i} " + "x" * 90 for i in range(30))
    parts = corpus.split_markdown("long.md", text, max_chars=500)
    assert len(parts) > 5 and all(len(p.text) <= 500 for p in parts)
    assert "".join(p.text for p in parts).count("Paragraph") == 30


def test_the_lab_ships_docs_to_answer_from_and_an_empty_folder_is_an_error(tmp_path):
    assert {p.source for p in corpus.load()} >= {"lifecycle.md", "operations.md", "teams.md"}
    with pytest.raises(LabError, match="no Markdown documents"):
        corpus.load(tmp_path)


def test_the_default_prompt_has_both_variables_and_renders_them():
    prompt.check(prompt.DEFAULT_TEMPLATE, "the default")
    rendered = prompt.render(prompt.DEFAULT_TEMPLATE, question="Why?", context="[1] because")
    assert "Question: Why?" in rendered and "[1] because" in rendered and "{{" not in rendered


@pytest.mark.parametrize(
    "template, missing",
    [("Answer {{question}}.", "{{context}}"), ("{{ context }} only", "{{question}}"), ("nothing", "{{context}}, {{question}}")],
)
def test_a_template_missing_a_variable_is_refused_with_its_name(template, missing):
    with pytest.raises(LabError, match=f"lacks the variable\\(s\\) {missing}"):
        prompt.check(template, "prompt p")


def test_a_chat_prompt_is_refused():
    with pytest.raises(LabError, match="chat prompt"):
        prompt.check([{"role": "user", "content": "{{question}} {{context}}"}], "prompt p")


def test_embeddings_come_from_the_packaged_weights_unit_length():
    vectors = embedding.embed(["restore a backup", "add user accounts"])
    assert vectors.shape == (2, embedding.DIMENSIONS)
    assert vectors.dtype.name == "float32"
    assert (abs((vectors**2).sum(axis=1) - 1) < 1e-4).all()


@pytest.fixture(scope="module")
def index():
    roles = corpus.split_markdown("teams.md", "## Roles\n\nAdmins, members and viewers.")
    return Index.build(corpus.split_markdown("operations.md", DOC) + roles)


def test_search_ranks_the_matching_section_first_and_the_index_round_trips(index, tmp_path):
    [hit] = index.search(embedding.embed(["How do I restore from a backup file?"])[0], k=1)
    assert hit.passage.title == "Restoring"
    loaded = Index.load(index.save(tmp_path / "index"))
    assert loaded.passages == index.passages and (loaded.vectors == index.vectors).all()
    with pytest.raises(LabError, match="at least 1"):
        index.search(embedding.embed(["x"])[0], k=0)


def test_an_index_made_by_another_embedding_model_is_refused(index, tmp_path):
    folder = index.save(tmp_path / "index")
    meta = (folder / "passages.json").read_text().replace(embedding.MODEL, "some other model")
    (folder / "passages.json").write_text(meta)
    with pytest.raises(LabError, match="build the app again"):
        Index.load(folder)


def test_sentences_leave_out_code_tables_and_headings():
    text = "## Title\n\n- First point is a sentence. Second one follows here.\n\n| a | b |\n|---|---|\n\n```sh\nmake x\n```"
    assert generate.sentences(text) == ["First point is a sentence.", "Second one follows here."]


def test_the_offline_app_answers_with_sentences_and_sources(index):
    app = DocsQA(index, prompt.DEFAULT_TEMPLATE, "prompts:/p/1", top_k=2)
    answer = app.answer("  How do I restore a backup?  ")
    assert "make restore" in answer
    assert answer.splitlines()[-1].startswith("Sources: operations.md#restoring")
    assert app.answer("How do I restore a backup?") == answer  # deterministic
    for bad in ("", "   ", None, "x" * 2001):
        with pytest.raises(LabError):
            app.answer(bad)


def test_an_app_cannot_be_built_with_a_template_it_cannot_fill(index):
    with pytest.raises(LabError, match="{{context}}"):
        DocsQA(index, "Answer {{question}}", "prompts:/p/2")


def test_cited_files_read_the_sources_line_or_any_md_name():
    assert evaluation.cited_files("text\n\nSources: a.md#x, b.md#y, a.md#z") == ["a.md", "b.md"]
    assert evaluation.cited_files("See lifecycle.md and teams.md.") == ["lifecycle.md", "teams.md"]
    assert evaluation.cited_files("") == []


def test_the_scorers_judge_an_answer_against_its_expectations():
    expectations = {"expected_source": "lifecycle.md", "expected_terms": ["champion"]}
    good = "Promote it: the champion alias moves.\n\nSources: lifecycle.md#promotion, teams.md#roles"
    second = "Promote it.\n\nSources: teams.md#roles, lifecycle.md#promotion"
    assert evaluation.top_source_exact_match(outputs=good, expectations=expectations) is True
    assert evaluation.top_source_exact_match(outputs=second, expectations=expectations) is False
    assert evaluation.cites_expected_source(outputs=second, expectations=expectations) is True
    assert evaluation.mentions_expected_term(outputs=second, expectations=expectations) is False
    assert evaluation.answer_length(outputs=good).value is True
    short = evaluation.answer_length(outputs="No.")
    assert short.value is False and "3 characters" in short.rationale


def test_every_call_of_a_traced_app_is_a_trace_and_an_untraced_one_leaves_none(index, tmp_path):
    import mlflow

    # A store and experiment of its own: the experiment an earlier test of this process left
    # active (seen in CI: id 1 of another store) must not receive these traces. Left on the
    # store's Default experiment afterwards, as a fresh process starts.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'traces.db'}")
    mlflow.set_experiment("genai-unit")
    try:
        traced = DocsQA(index, prompt.DEFAULT_TEMPLATE, "prompts:/p/1", top_k=2)
        answer = traced.answer(question="How do I restore a backup?")  # as mlflow.genai.evaluate calls it
        mlflow.flush_trace_async_logging()
        trace = mlflow.get_trace(mlflow.get_last_active_trace_id())
        assert [s.name for s in trace.data.spans] == ["docs-qa", "retrieve", "render-prompt", "extractive-answer"]
        assert trace.info.tags["mlflow_lab.prompt"] == "prompts:/p/1"
        assert trace.data.spans[0].inputs == {"question": "How do I restore a backup?"}  # not the app itself
        untraced = DocsQA(index, prompt.DEFAULT_TEMPLATE, "prompts:/p/1", top_k=2, traced=False)
        assert untraced.answer("How do I restore a backup?") == answer
        assert mlflow.get_last_active_trace_id() == trace.info.trace_id
    finally:
        mlflow.set_experiment(experiment_id="0")
