from eolake_downloads.settings import DownloadsSettings
from eolake_kit import serve


def main() -> None:
    serve("eolake_downloads.app:create_app", DownloadsSettings(), zero_copy=True)


if __name__ == "__main__":
    main()
