"""Shared fixtures. TensorFlow logs are quieted; Keras runs on TensorFlow unless a test asks."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
