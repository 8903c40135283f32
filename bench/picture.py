"""The picture of the bdrc bag's runs: for each pipeline, the bytes the S3 stand-in served (received) and the bytes
verified in place, over the run (``docs/bench-bdrc.png``; the README shows it).

Verified in place: for ours, the payload bytes at their place in the work folder (ours hashes each byte as it writes
it; a member is checked when its last byte is in); for the baselines nothing is verified before ``bagit validate``
ends, so their curve steps from 0 to the payload when that step ends (the time their log gives).
"""

from __future__ import annotations

from pathlib import Path

from bench.e2e import PipelineRun

__all__ = ["draw_bdrc"]

COLOURS = {"ours": "tab:green", "baseline": "tab:blue", "rclone": "tab:orange"}


def verified_curve(run: PipelineRun) -> tuple[list[float], list[float]]:
    """(seconds, MiB verified) of one run."""
    payload = run.payload_bytes / 2**20
    if run.pipeline == "ours":
        return ([s.seconds for s in run.timeline], [min(s.in_place / 2**20, payload) for s in run.timeline])
    ends = [e["validate"] - run.started_wall for e in run.step_ends if "validate" in e]
    end = max(ends) if ends else run.seconds
    return [0.0, end, end, run.seconds], [0.0, 0.0, payload, payload]


def draw_bdrc(runs: dict[str, PipelineRun], path: Path, title: str) -> Path:
    """Draw ``runs`` (pipeline name → run) into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.8), dpi=110)
    for name, run in runs.items():
        colour = COLOURS.get(name, "tab:gray")
        axes.plot([s.seconds for s in run.timeline], [s.served / 2**20 for s in run.timeline], color=colour,
                  label=f"{name}: received")
        seconds, verified = verified_curve(run)
        axes.plot(seconds, verified, color=colour, linestyle="--", label=f"{name}: verified in place")
        axes.axvline(run.seconds, color=colour, linewidth=0.6, alpha=0.6)
    axes.set_xlabel("seconds since the message was sent (thin line: work in the archive, message deleted)")
    axes.set_ylabel("MiB")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
