"""Running the training pipeline on a Kubeflow cluster: upload it, start runs, schedule recurring runs."""
