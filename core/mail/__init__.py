"""E-mail out (SMTP) and in (IMAP): settings, composing, sending, reading, parsing, loop checks."""
