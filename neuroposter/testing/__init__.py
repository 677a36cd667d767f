"""Test and benchmark helpers, not a user API: nothing in the package imports them.

Submodules:
    graphs: small hand-made NIR graphs (``chain_graph``, ``sdt_like_graph``, ``threshold_and_graph``) and
        ``random_spikes``.
    active_init: untrained networks that spike in every layer (``spiking_random_init``, ``demo_sized_sdt``).
    emulate: ``emulate(plan, x)``, a Loihi network plan run without Lava (the one integer neuron, the plan's
        synapses and timing), to check the Lava build.
    lava_reference: ``lava_lif_reference``, Lava's bit-accurate LIF in plain Python integers (the independent
        reference of the one integer neuron).

They live in the package (rather than under ``tests/``) because ``benchmarks/`` uses them too; the wheel leaves
them out (``pyproject.toml``), so they exist only in a checkout.
"""
