from eolake_kit import serve
from eolake_web.settings import WebSettings


def main() -> None:
    serve("eolake_web.app:create_app", WebSettings())


if __name__ == "__main__":
    main()
