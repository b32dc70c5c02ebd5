"""The compliance report: summary.json, report.html (charts), report.xlsx."""
