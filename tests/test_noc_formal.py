"""Formal proof (SymbiYosys k-induction) of the router's safety properties.

The properties live in ``Router._formal`` (elaborated only for ``platform="formal"``): no output
granted to two inputs, no flit sent to two outputs or altered, and flits in - flits out = flits
buffered, so the router never drops or duplicates a flit.
"""

import pytest

from rtl.noc.router import Router
from scoville.formal import check


@pytest.mark.parametrize("x,y", [(1, 1)])
def test_router_never_drops_duplicates_or_double_grants(x, y):
    # Smallest flit (the header alone) and 2-flit FIFOs: the properties do not depend on either.
    check(Router(x, y, flit_width=28, depth=2), f"router_x{x}_y{y}", mode="prove", depth=2)
