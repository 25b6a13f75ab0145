"""Evaluation shared by experiments: sample quality of generative models (`samples`)."""
