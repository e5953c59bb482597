"""One client of the traces benchmark (bench/traces.py), a process of its own as an application
is: MLflow's fluent tracing API with its async trace logging (the default: spans are exported
by background threads, the application does not wait for the server).

    python -m bench.trace_client EXPERIMENT_ID TRACES SPANS_PER_TRACE

MLFLOW_TRACKING_URI and the credentials come from the environment. It imports MLflow and says
`ready`, waits for a line on standard input (so that every client starts at once, imports
done), logs TRACES traces of SPANS_PER_TRACE spans (a root and its children), waits until
MLflow's export queue is empty, and prints the seconds that took.
"""

from __future__ import annotations

import sys
import time

import mlflow


def main(experiment_id: str, traces: int, spans: int) -> None:
    mlflow.set_experiment(experiment_id=experiment_id)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for number in range(traces):
        with mlflow.start_span("request", span_type="AGENT") as root:
            root.set_inputs({"question": f"question {number}"})
            for step in range(spans - 1):
                with mlflow.start_span(f"step-{step}", span_type="TOOL") as child:
                    child.set_inputs({"step": step})
                    child.set_outputs({"result": f"result {number}.{step}"})
            root.set_outputs({"answer": f"answer {number}"})
    mlflow.flush_trace_async_logging()  # every span sent and answered
    print(f"{time.perf_counter() - started:.6f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
