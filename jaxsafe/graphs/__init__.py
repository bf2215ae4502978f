"""Graph partitioning with graph neural networks (spec: graph_partitioning.md).

Shared parts: graph I/O (:mod:`.io`), generators, the heavy-edge-matching
hierarchy (:mod:`.coarsen`), padding for jit (:mod:`.batching`), NNX graph
layers (:mod:`.layers`). Paper A: spectral embedding and partitioning modules
(:mod:`.embedding`, :mod:`.partition_module`, :mod:`.losses`, :mod:`.gnn`,
:mod:`.train`), partitioners and baselines (:mod:`.partition`, :mod:`.baselines`).
"""
