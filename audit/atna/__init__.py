"""The PACS's own audit messages (DICOM PS3.15 A.5, IHE ATNA) received over syslog."""
