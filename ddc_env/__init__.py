"""ddc-env: reinforcement-learning model compression as a Gymnasium environment."""
