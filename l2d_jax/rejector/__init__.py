"""The rejector as a head over named feature sources (text, agent features), one module each."""
