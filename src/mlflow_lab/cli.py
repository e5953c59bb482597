"""`lab`: bring the stack up and down, show its state, and print client settings.

Which runner (`--runner`/LAB_RUNNER: auto, compose or native) and the native runner's state
directory (`--state-dir`/LAB_STATE_DIR) are options of `lab` itself, given before or after the
command's name. Every expected failure is a LabError, printed as one sentence with a non-zero
exit (mlflow_lab.errors.run_cli).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, cast

import typer
from typer.core import TyperGroup

from mlflow_lab.accounts import Directory
from mlflow_lab.errors import LabError, run_cli
from mlflow_lab.runners import Runner, open_runner, remember
from mlflow_lab.settings import ENV_FILE, REPO_ROOT, Settings, ensure_env_file


def hoisted(args: Sequence[str], names: set[str]) -> list[str]:
    """`args` with the options called `names` (and their values) moved to the front: up to a
    `--`, which ends the options."""
    front: list[str] = []
    rest: list[str] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg == "--":
            rest += args[position:]
            break
        if arg in names or arg.split("=", 1)[0] in names:
            taken = 1 if "=" in arg else 2  # `--runner=native` or `--runner native`
            front += args[position : position + taken]
            position += taken
        else:
            rest.append(arg)
            position += 1
    return front + rest


class LabGroup(TyperGroup):
    """`lab`'s own options (--runner, --state-dir) are declared once, on the app, and taken after
    a command's name too: `lab up --runner native` is `lab --runner native up`."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # ctx: typer's own click Context
        own = {name for param in self.params for name in param.opts if name.startswith("--")}
        return super().parse_args(ctx, hoisted(args, own))


app = typer.Typer(
    cls=LabGroup,
    help="The mlflow-lab stack: MLflow on PostgreSQL and S3 behind nginx.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
DEFAULT_STATE = REPO_ROOT / ".lab"


@dataclass(frozen=True)
class Where:
    """Which runner a command talks to, and where the native runner keeps its state."""

    runner: str
    state_dir: Path

    def open(self, settings: Settings | None = None) -> tuple[Runner, str]:
        """The runner, and why it was chosen."""
        return open_runner(self.runner, self.state_dir, settings or Settings.load())


@app.callback()
def where(
    ctx: typer.Context,
    runner: Annotated[
        str,
        typer.Option(envvar="LAB_RUNNER", help="auto (Compose where it can work, else native), compose or native."),
    ] = "auto",
    state_dir: Annotated[
        Path, typer.Option(envvar="LAB_STATE_DIR", help="Where the native runner keeps all its state.")
    ] = DEFAULT_STATE,
) -> None:
    ctx.obj = Where(runner, state_dir)


def place(ctx: typer.Context) -> Where:
    """What `lab`'s options said (its callback runs before every command)."""
    return cast(Where, ctx.obj)


def lab_runner(ctx: typer.Context) -> Runner:
    return place(ctx).open()[0]


@app.command()
def up(ctx: typer.Context) -> None:
    """Create .env on first run (strong random secrets), then start every service and wait until healthy."""
    written = ensure_env_file()
    if written:
        typer.echo(f"wrote {len(written)} setting(s) to {ENV_FILE} (secrets generated; the file is yours to edit)")
    settings = Settings.load()
    settings.validate()
    chosen, reason = place(ctx).open(settings)
    typer.echo(chosen.describe(reason))
    chosen.up()
    remember(chosen, place(ctx).state_dir)
    typer.echo(
        f"\nMLflow is up at {settings.tracking_uri()}  (user {settings['LAB_USER']}, password in {ENV_FILE.name}: LAB_PASSWORD)"
    )
    typer.echo(
        f"Model API: {settings.tracking_uri()}/models/<name>/invocations and /v2/models/<name>/infer "
        "(same credentials; serves a model once it has a Production version)"
    )
    typer.echo('Point a client at it:  eval "$(make -s env)"')


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop every service; data is kept."""
    lab_runner(ctx).down()
    typer.echo("stopped (data kept; `make clean` deletes it)")


@app.command()
def status(ctx: typer.Context) -> None:
    """Each service and its health."""
    if not lab_runner(ctx).show_status():
        raise typer.Exit(1)


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="One service (postgres, s3, mlflow, nginx, init); all when omitted.")] = "",
    lines: Annotated[int, typer.Option(help="Lines from the end of each log.")] = 50,
) -> None:
    """The tail of each service's log."""
    lab_runner(ctx).show_logs(service, lines)


@app.command()
def env() -> None:
    """Shell exports that point an MLflow client at the lab: eval "$(make -s env)"."""
    for key, value in Settings.load().client_env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def job(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="train, promote, score or sample-input; the rest goes to `lab-job <name>`.")],
) -> None:
    """Run a lifecycle job against the lab: in its container under Compose, else from this venv."""
    if code := lab_runner(ctx).run_job(name, ctx.args):
        raise typer.Exit(code)


@app.command()
def clean(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", envvar="FORCE", help="Do not ask before deleting.")] = False,
) -> None:
    """Stop the stack and delete all its data (runs, models, artifacts). .env is kept."""
    if not force and not typer.confirm("Delete every run, model and artifact of the lab?"):
        raise typer.Exit(1)
    lab_runner(ctx).clean()
    shutil.rmtree(place(ctx).state_dir, ignore_errors=True)
    typer.echo("deleted the lab's data")


@app.command()
def backup(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Option("--dir", envvar="BACKUP_DIR", help="Where the archive is written.")] = REPO_ROOT
    / "backups",
) -> None:
    """Archive the running lab: databases (runs, accounts), every artifact, a manifest with sha256s. As the admin of .env."""
    from mlflow_lab.backup import operations

    typer.echo(operations.backup(lab_runner(ctx), Settings.load(), folder))


@app.command()
def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An archive written by `lab backup`.")],
    force: Annotated[bool, typer.Option("--force", envvar="FORCE", help="Replace a lab that already holds runs.")] = False,
) -> None:
    """Restore an archive onto the running lab (checked in full first; FORCE=1 replaces runs). As the admin of .env."""
    from mlflow_lab.backup import operations

    operations.restore(lab_runner(ctx), Settings.load(), file, force)


@app.command()
def gc(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(help="Remove what was deleted at least this long ago: 30d, 12h, 1d2h30m, 0s (default LAB_GC_OLDER_THAN)."),
    ] = None,
) -> None:
    """Remove deleted runs, experiments and logged models for good, artifacts too (`mlflow gc`); bucket size before/after."""
    from mlflow_lab.gc import command

    typer.echo(command.run(older_than or Settings.load()["LAB_GC_OLDER_THAN"], lambda: lab_runner(ctx)))


users = typer.Typer(
    help="Accounts in MLflow's auth app (the lab's one identity store), managed as the admin from .env.",
    no_args_is_help=True,
)
app.add_typer(users, name="users")
RoleOpt = Annotated[str, typer.Option(help="admin, member (creates, and manages what it created) or viewer (reads).")]


def directory() -> Directory:
    return Directory(Settings.load())


def show_passwords(rows: list[tuple[str, str]], what: str) -> None:
    size = max(len("account"), *(len(name) for name, _ in rows))
    typer.echo(f"{'account':{size}}  password")
    for name, password in rows:
        typer.echo(f"{name:{size}}  {password}")
    typer.echo(f"\n{len(rows)} account(s) {what}. The passwords are shown only now: hand them out.", err=True)


@users.command("add")
def users_add(
    names: Annotated[list[str] | None, typer.Argument(help="Account names (a lowercase letter, then a-z 0-9 . _ -).")] = None,
    count: Annotated[int, typer.Option(min=0, help="Also add this many numbered accounts (a workshop's attendees).")] = 0,
    prefix: Annotated[str, typer.Option(help="Name of the numbered accounts: PREFIX01, PREFIX02, ...")] = "attendee",
    role: RoleOpt = "member",
) -> None:
    """Add accounts, each with a generated password shown once (MLflow keeps only its hash)."""
    width = max(2, len(str(count)))
    wanted = [*(names or []), *(f"{prefix}{n:0{width}d}" for n in range(1, count + 1))]
    if not wanted:
        raise LabError("name at least one account to add, or give --count.")
    show_passwords(directory().add(wanted, role), f"added as {role}")


@users.command("remove")
def users_remove(names: Annotated[list[str], typer.Argument(help="Accounts to remove.")]) -> None:
    """Remove accounts; what they made stays. Refused within twice LAB_AUTH_CACHE_SECONDS."""
    directory().remove(names)
    typer.echo(f"removed {', '.join(names)}")


@users.command("list")
def users_list() -> None:
    """Every account and its role (not the lab's own: the admin from .env, the model API's)."""
    for name, role in directory().accounts():
        typer.echo(f"{name}  {role}")


@users.command("set-role")
def users_set_role(
    name: Annotated[str, typer.Argument(help="The account.")],
    role: Annotated[str, typer.Argument(help="admin, member or viewer.")],
) -> None:
    """Change an account's role (effective at its next request)."""
    directory().set_role(name, role)
    typer.echo(f"{name} is now {role}")


@users.command("reset-password")
def users_reset_password(name: Annotated[str, typer.Argument(help="The account.")]) -> None:
    """Give an account a new generated password, shown once; the old one is refused within twice LAB_AUTH_CACHE_SECONDS."""
    show_passwords([(name, directory().reset_password(name))], "given a new password")


workspaces = typer.Typer(
    help="Team workspaces: each team sees and changes only its own experiments and models.", no_args_is_help=True
)
app.add_typer(workspaces, name="workspaces")


@workspaces.command("add")
def workspaces_add(
    name: Annotated[str, typer.Argument(help="The workspace (a lowercase letter, then a-z 0-9 . _ -).")],
    members: Annotated[str, typer.Option(help="Accounts that work in it as members, comma separated.")] = "",
) -> None:
    """Create a workspace (or add members to one); its members reach it with MLFLOW_WORKSPACE=NAME."""
    directory().add_workspace(name, [m.strip() for m in members.split(",") if m.strip()])
    typer.echo(f"workspace {name}: clients use it with MLFLOW_WORKSPACE={name} (the UI: its workspace menu)")


@workspaces.command("list")
def workspaces_list() -> None:
    """Every workspace and the accounts in it."""
    for name, accounts in directory().workspaces().items():
        typer.echo(f"{name}  {' '.join(accounts)}")


@app.command("model-image")
def model_image(
    uri: Annotated[str, typer.Argument(help="A registry reference: models:/<name>/<stage|version> or models:/<name>@<alias>.")],
    tag: Annotated[str | None, typer.Option(help="Image tag (default mlflow-lab/model-<name>:<version>).")] = None,
) -> None:
    """Build an image serving that exact model version (V2, /invocations, SageMaker's `serve`), no tracking server needed."""
    from mlflow_lab.deploy import model_image as images

    built = images.build(Settings.load(), uri, tag)
    typer.echo(built)
    typer.echo(
        f"run it:  docker run --rm -p 8080:8080 {built}   (then GET /ping, POST /invocations or /v2/models/.../infer)", err=True
    )


k8s = typer.Typer(help="Kubernetes: render the lab's manifests, print KServe InferenceServices.", no_args_is_help=True)
app.add_typer(k8s, name="k8s")


@k8s.command("render")
def k8s_render(
    target: Annotated[str, typer.Argument(help="all-in-one, external (managed PostgreSQL and S3) or kserve.")],
) -> None:
    """Print the lab's manifests for TARGET with the settings of .env (pipe it to `kubectl apply -f -`)."""
    from mlflow_lab.deploy import k8s as manifests

    typer.echo(manifests.to_yaml(manifests.render(Settings.load(), target)), nl=False)


@k8s.command("inferenceservice")
def inference_service(
    uri: Annotated[str, typer.Argument(help="A registry reference: models:/<name>/<stage|version> or models:/<name>@<alias>.")],
    name: Annotated[str | None, typer.Option(help="The InferenceService's name (default: the model's name).")] = None,
    namespace: Annotated[str | None, typer.Option(help="Its namespace (default: kubectl's current one).")] = None,
) -> None:
    """Print the InferenceService serving the version URI points at now (pipe it to `kubectl apply -f -`)."""
    import yaml

    from mlflow_lab.deploy import kserve

    typer.echo(yaml.safe_dump(kserve.inference_service(Settings.load(), uri, name, namespace), sort_keys=False), nl=False)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
