"""Layer 4: metrics, reports, the predictor, exports and model cards (never imports training)."""
