"""Evaluation: policy success rates, (later) translation metrics, reports."""
