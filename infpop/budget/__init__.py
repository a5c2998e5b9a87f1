"""Measuring a grid on a budget: the strategies that choose what to measure (strategies.py) and
their study on the rehearsal of the paper's grid (study.py; docs/budget.md)."""
