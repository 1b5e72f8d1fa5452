"""Run the real program without a cloud: deterministic mocks and a runner."""
