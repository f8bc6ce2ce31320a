"""Test-time adaptation of a trained model: the continuous cache, dynamic evaluation and their tuning."""
