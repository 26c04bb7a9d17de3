"""Training code for the IASA teacher fine-tune and few-step distillation."""
