"""The HTML report: `python -m shortsci_bench.collect --format html --out report/`.

    from shortsci_bench.collect import collect
    from shortsci_bench.report import write_report
    write_report(collect(), "report/")   # report/index.html, one page per experiment

matplotlib is imported only while drawing learning curves.
"""

from shortsci_bench.report.html import experiment_html, index_html, write_report

__all__ = ["experiment_html", "index_html", "write_report"]
