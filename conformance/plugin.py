"""pytest plugin of the conformance suite: inert until the suite lands."""
