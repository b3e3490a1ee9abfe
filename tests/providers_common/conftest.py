from tests.providers_common.pytest_fixtures import loopback

__all__ = ["loopback"]
