"""The stages `app.deploy` runs, in order: network and edge (stages/edge.py), the cluster
up to its readiness gate (stages/cluster.py), and what runs in the cluster behind the gate
(stages/in_cluster.py). Each stage is a function that creates top-level components (no
stage is a component: the URNs stay those of the components) and returns a frozen
dataclass of what the next stages need."""
