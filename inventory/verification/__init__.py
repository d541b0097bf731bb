"""C-ECHO verification of DICOM nodes: checks, sweeps, node states and outage tickets."""
