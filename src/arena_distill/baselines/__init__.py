"""The source documents' other predictors: the answer-feature model and the prompted judge."""
