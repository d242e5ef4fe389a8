# Red team, 2026-12-02 (third round): dataclasses runs field names as source code, with the real builtins.
# dataclasses compiles field names into source text: a renamed Field runs any code, builtins included
import dataclasses as dc

PAYLOAD = ("[o.enforce(frozenset()) for o in __import__('gc').get_objects() if type(o).__name__ == 'KernelBans']"
           " + [setattr(self, 'library_softmax', __import__('torch').softmax)]")
B = dc.make_dataclass("B", [("a", int, dc.field(default=0, init=False, repr=False))])
dc.fields(B)[0].name = "a," + PAYLOAD + ")#"
C = dc.make_dataclass("C", [], bases=(B,), init=False)


def softmax(x, dim=-1):
    c = C()
    c == c  # the generated __eq__ runs PAYLOAD with the real builtins
    return c.library_softmax(x, dim)
