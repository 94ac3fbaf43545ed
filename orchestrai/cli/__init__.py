"""The command line: parse, call the library, render. No behaviour lives here."""
