"""Test doubles that follow a documented service: a synthetic Amazon Connect contact center
(`contact_center`) and the Connect API answering from it (`connect_api`)."""
