"""Lightning modules: they train the plain models in `models/` and record evaluations."""
