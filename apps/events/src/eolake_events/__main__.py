from eolake_events.settings import EventsSettings
from eolake_kit import serve


def main() -> None:
    serve("eolake_events.app:create_app", EventsSettings())


if __name__ == "__main__":
    main()
