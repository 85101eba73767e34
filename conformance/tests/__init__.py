"""Behaviour tests of the conformance suite, one module per area of behaviours.toml.

Each test names the behaviour IDs it checks (`@pytest.mark.behaviour`), states what it
needs (`@pytest.mark.requires`), and runs once per runtime given with --runtime.
"""
