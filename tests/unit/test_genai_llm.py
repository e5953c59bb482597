"""The real-LLM path of the GenAI app, against a local stand-in of an OpenAI-compatible endpoint
on loopback: what the app sends and how it reads the answer. No real LLM service is reachable
from the lab's machines, so this checks the request, not a model's answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.genai import corpus, prompt
from mlflow_lab.genai.app import DocsQA
from mlflow_lab.genai.generate import Llm
from mlflow_lab.genai.index import Index


class StandIn:
    """Records each request; answers with `reply` (status, body)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.reply = (200, {"choices": [{"message": {"role": "assistant", "content": " Use make restore. "}}]})
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
                status, answer = stand_in.reply
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def stand_in():
    server = StandIn()
    yield server
    server.server.shutdown()


def test_settings_come_from_the_openai_variables():
    assert Llm.from_env({}) is None  # no key: the offline answer
    assert Llm.from_env({"OPENAI_API_KEY": "k"}) == Llm("k", "https://api.openai.com/v1", "gpt-4o-mini")
    given = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://h/v1", "OPENAI_MODEL": "m"}
    assert Llm.from_env(given) == Llm("k", "http://h/v1", "m")


def test_the_rendered_prompt_is_sent_as_a_chat_completion(stand_in, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.chdir(tmp_path)  # the traced call's store: a throwaway one
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    index = Index.build(corpus.split_markdown("operations.md", "## Restoring\n\nRun make restore on a running lab."))
    app = DocsQA(index, prompt.DEFAULT_TEMPLATE, "prompts:/p/1", Llm("secret", stand_in.url, "small-model"), top_k=1)
    assert app.generator == "llm:small-model"
    assert app.answer("How do I restore?") == "Use make restore."
    [request] = stand_in.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret"
    assert request["body"]["model"] == "small-model"
    [message] = request["body"]["messages"]
    assert message["role"] == "user"
    assert "Question: How do I restore?" in message["content"] and "(operations.md#restoring)" in message["content"]
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize(
    "reply, error",
    [((401, {"error": {"message": "bad key"}}), "answered 401: .*bad key"), ((200, {"choices": []}), "without choices")],
)
def test_an_endpoint_error_is_one_clear_sentence(stand_in, reply, error):
    stand_in.reply = reply
    with pytest.raises(LabError, match=error):
        Llm("k", stand_in.url).complete("hi")


def test_an_unreachable_endpoint_is_one_clear_sentence():
    with pytest.raises(LabError, match="could not be reached"):
        Llm("k", "http://127.0.0.1:9/v1").complete("hi")
