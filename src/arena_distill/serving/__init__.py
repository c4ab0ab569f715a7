"""Scoring new pairs with an exported model: TTA prediction, worker processes, the submission table."""
