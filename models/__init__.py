"""Numerics: datatypes, quantizers, reference arithmetic for the RTL, project-native networks.

``models`` is the lowest room of the suite (see ``../shared/DESIGN.md``): everything may import it,
it imports only numpy and torch.  It also holds the suite's one user-facing error type,
:class:`models.errors.SimError`, so that every room can raise it.
"""
