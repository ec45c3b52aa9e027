"""Collect the run time of every notebook and print the total at the end of the session.

Times travel in each report's user_properties, so the summary also works under pytest-xdist.
"""

from __future__ import annotations

NOTEBOOK_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report) -> None:
    if report.when == "call":
        for key, value in report.user_properties:
            if key == "notebook_seconds":
                NOTEBOOK_SECONDS[report.nodeid.split("[")[-1].rstrip("]")] = float(value)


def pytest_terminal_summary(terminalreporter) -> None:
    if not NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times (nbval, including kernel start)")
    for name, seconds in sorted(NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{name:28s} {seconds:6.1f} s")
    total = sum(NOTEBOOK_SECONDS.values())
    terminalreporter.write_line(f"{'total':28s} {total:6.1f} s over {len(NOTEBOOK_SECONDS)} notebooks")
