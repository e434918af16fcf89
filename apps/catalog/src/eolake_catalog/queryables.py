"""Dependent queryables: a collection's queryables with the values each categorical property takes (an `enum`, from
the collection's summaries), narrowed by the values already chosen (`/collections/{id}/queryables?river=TOUCH`):
each other enum keeps only the values of the items that have every chosen value. A chosen property whose item value
is an array (`missions`) matches when the array holds the value.

One statement per request, over the collection's items only, under the database's statement timeout.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from stac_fastapi.pgstac.extensions.filter import FiltersClient

# The distinct values (as text) of each named property among the collection's items holding every chosen value;
# array properties count each element.
NARROWED = """
SELECT n.name, array_agg(DISTINCT x #>> '{}')
FROM pgstac.items i
CROSS JOIN unnest($2::text[]) AS n(name)
CROSS JOIN LATERAL jsonb_array_elements(
    CASE jsonb_typeof(i.content->'properties'->n.name) WHEN 'array' THEN i.content->'properties'->n.name
         ELSE jsonb_build_array(i.content->'properties'->n.name) END) AS x
WHERE i.collection = $1 AND jsonb_typeof(x) <> 'null' AND (
    SELECT bool_and(i.content->'properties'->>c.name = c.value OR i.content->'properties'->c.name ? c.value)
    FROM unnest($3::text[], $4::text[]) AS c(name, value)) IS NOT FALSE
GROUP BY n.name
"""
SUMMARIES = "SELECT content->'summaries' FROM pgstac.collections WHERE id = $1"


def categorical(summaries: dict[str, Any] | None) -> dict[str, list[Any]]:
    """The summaries that list values (strings or numbers), by property name."""
    return {
        name: values
        for name, values in (summaries or {}).items()
        if isinstance(values, list)
        and values
        and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
    }


class DependentQueryables(FiltersClient):  # type: ignore[misc]  # stac_fastapi is not followed: read as Any
    async def get_queryables(self, request: Request, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await super().get_queryables(request, collection_id, **kwargs)
        if collection_id is None:
            return answer
        chosen = dict(request.query_params)
        async with request.app.state.get_connection(request, "r") as conn:
            enums = categorical(await conn.fetchval(SUMMARIES, collection_id))
            unknown = sorted(set(chosen) - set(enums))
            if unknown:
                raise HTTPException(
                    400,
                    f"not a categorical queryable of {collection_id}: {', '.join(unknown)}; "
                    f"choose among {', '.join(sorted(enums)) or 'none'}",
                )
            if chosen:
                found = dict(
                    await conn.fetch(NARROWED, collection_id, list(enums), list(chosen), list(chosen.values()))
                )
                enums = {
                    name: [v for v in values if str(v) in set(found.get(name) or ())] for name, values in enums.items()
                }
        return with_enums(answer, enums)


def with_enums(answer: dict[str, Any], enums: dict[str, list[Any]]) -> dict[str, Any]:
    properties = dict(answer.get("properties") or {})
    for name, values in enums.items():
        properties[name] = {**properties.get(name, {"type": "string"}), "enum": values}
    return {**answer, "properties": properties}
