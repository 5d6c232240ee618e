"""Follow a job to its end: server-sent events when the server has them, polling otherwise.

The outcome is the exit code, so scripts can chain on it:
0 succeeded, 1 failed, 2 cancelled (3 when the API could not be asked; see app.client.commands).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from app.client.api import JSON, EventsUnavailable, UnfoldClient
from app.client.views import JobView
from app.job_status import FINISHED

EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 2}


def follow(
    client: UnfoldClient,
    job_id: str,
    console: Console,
    *,
    label: str | None = None,
    poll_seconds: float = 1.0,
    use_events: bool = True,
) -> JSON:
    """Show the job's live progress until it ends; return the final job."""
    job = client.get_job(job_id)
    with JobView(console, label or job_id) as view:
        view.show(job["status"], job["progress"])
        if job["status"] not in FINISHED:
            ended = _from_events(client, job_id, view) if use_events else None
            job = ended or _by_polling(client, job_id, view, poll_seconds)
        view.show(job["status"], job["progress"])
    return job


def _from_events(client: UnfoldClient, job_id: str, view: JobView) -> JSON | None:
    """The final job from the event stream, or None if the stream is unavailable or cut short."""
    try:
        for event, data in client.job_events(job_id):
            if event == "progress":
                view.show(data["status"], data["progress"])
            elif event == "end":
                return data
    except EventsUnavailable:
        pass
    return None


def _by_polling(client: UnfoldClient, job_id: str, view: JobView, poll_seconds: float) -> JSON:
    while True:
        job = client.get_job(job_id)
        view.show(job["status"], job["progress"])
        if job["status"] in FINISHED:
            return job
        time.sleep(poll_seconds)


def outcome(job: JSON, console: Console) -> int:
    """Print how the job ended; return its exit code."""
    status = job["status"]
    if status == "succeeded":
        console.print(f"[green]succeeded[/green] {job['id']}: model {job['model_id']}", soft_wrap=True)
    elif status == "failed":
        error = job.get("error") or {}
        reason = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        console.print(f"[red]failed[/red] {job['id']}: {escape(reason)}", soft_wrap=True)
    else:
        console.print(f"[yellow]{status}[/yellow] {job['id']}", soft_wrap=True)
    return EXIT_CODES.get(status, 1)
