"""Imaging studies on PACS archives: listing by C-FIND, retention rules, deletion and IOCM notes."""
