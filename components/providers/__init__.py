"""Dynamic-provider implementations, each a self-contained module (standard library and
`pulumi.dynamic` only) that is shipped to the provider process as source text.

Pulumi stores a dynamic provider, pickled, in the stack state and unpickles it for
every later refresh, update and destroy. dill pickles functions by value as bytecode,
which a different Python minor cannot load: upgrading Python would break
`pulumi destroy`. `shipped(...)` instead pickles only a call to the built-in `eval`
with the module's source, which every Python 3 compiles afresh (see shipping.py).
"""
