"""Subscribe to a platform's events: catalog and order changes, as CloudEvents from its AMQP topic exchange.

Needs the `events` extra (`pip install 'eolake-client[events]'`, which brings aio-pika). The platform's operators
give you the broker's URL; the exchange and its routing keys are described at `<base URL>/events/`:

    catalog.collection.{created,updated,deleted}.<collection>
    catalog.item.{created,updated,deleted}.<collection>
    downloads.order.<state>

    import asyncio
    from contextlib import aclosing
    from eolake_client.events import subscribe

    async def main():
        events = subscribe("amqp://user:password@broker:5672/", ["catalog.item.*.garonne-wse"])
        async with aclosing(events):
            async for event in events:
                print(event["type"], event["subject"])

    asyncio.run(main())

Delivery is at least once: an event may arrive twice (the same `id`) after a failure; keep the ids you handled if
that matters. With `queue` (a name of your own), the broker keeps the events for you while you are away; without,
a private queue lives as long as the subscription.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence

EXCHANGE = "eolake.events"


async def bind(
    connection, keys: Sequence[str], *, queue: str | None = None, exchange: str = EXCHANGE, prefetch: int = 100
):
    """The subscription's queue, bound to `keys` on the exchange: durable and named `queue`, or private."""
    import aio_pika

    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    target = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    declared = await (channel.declare_queue(queue, durable=True) if queue else channel.declare_queue(exclusive=True))
    for key in keys:
        await declared.bind(target, key)
    return declared


async def subscribe(
    amqp_url: str, keys: Sequence[str] = ("#",), *, queue: str | None = None, exchange: str = EXCHANGE
) -> AsyncGenerator[dict, None]:
    """The events whose routing key matches one of `keys` (`*` one word, `#` any), oldest first, as CloudEvents
    (dicts: id, source, type, subject, time, data). Each is acknowledged when your loop asks for the next one, or
    breaks out after it: iterate inside `contextlib.aclosing(...)`, so that the last one is acknowledged before the
    connection closes."""
    import aio_pika

    async with await aio_pika.connect(amqp_url) as connection:
        declared = await bind(connection, keys, queue=queue, exchange=exchange)
        async with declared.iterator() as messages:
            async for message in messages:
                try:
                    event = json.loads(message.body)
                except ValueError:
                    await message.reject()  # not an event: dropped, never redelivered
                    continue
                try:
                    yield event
                except GeneratorExit:
                    await message.ack()
                    raise
                await message.ack()
