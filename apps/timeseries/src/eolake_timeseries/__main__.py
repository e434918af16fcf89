"""eolake time-series service."""

from eolake_kit import serve
from eolake_timeseries.settings import TimeseriesSettings


def main() -> None:
    serve("eolake_timeseries.app:create_app", TimeseriesSettings())


if __name__ == "__main__":
    main()
