import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev")
INSTALLED_APPS = ["django.contrib.admin", "shop"]
# The key is read here and handed on by name: the views that use it are checked.
OPENAI_API_KEY = os.environ["OPENAI_API_KEY"]
AI_MODEL = "gpt-4o-mini"
