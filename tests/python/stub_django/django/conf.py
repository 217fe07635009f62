"""`django.conf.settings`, already configured; tasks set DATABASES."""


class Settings:
    configured = True
    DATABASES = {}


settings = Settings()
