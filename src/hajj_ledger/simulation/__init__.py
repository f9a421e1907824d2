"""A simulated season: the figures it is calibrated to, the planner of each mission's journeys, simulated identities,
and the run that records them."""
