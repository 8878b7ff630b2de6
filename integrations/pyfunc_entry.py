"""Models-from-code entry point: MLflow runs this file to build the pyfunc (no pickled objects)."""

import mlflow.models

from integrations.pyfunc_model import VistuneClassifierModel

mlflow.models.set_model(VistuneClassifierModel())
