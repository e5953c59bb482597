"""Beyond one machine: a self-contained model image, KServe objects and Kubernetes manifests.

Each piece starts from the lab's registry (`models:/...` through nginx, as any client) and the
lab's own Python image, so what runs elsewhere is what the lab tested.
"""
