"""Shipped reference ground truths, one folder per (suite, backbone); see transferbench/reference/bundle.py."""
