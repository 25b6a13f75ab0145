"""Run records: what a finished run writes (`result.json`) and where it lives."""
