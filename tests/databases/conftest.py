"""Fixtures of the database backup tests: the locally built images and their containers."""

from tests.database_fixtures import database_images as database_images
from tests.database_fixtures import start_database as start_database
