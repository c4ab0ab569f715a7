"""Rows of the pipeline: reading and checking the tables, folds and their cleaning, and the text a model reads of a pair."""
