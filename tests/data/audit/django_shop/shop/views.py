"""Product descriptions written by the model (api.openai.com), per section."""

from django.conf import settings
from django.http import JsonResponse
from openai import OpenAI

from shop.models import AIUsageLog

client = OpenAI(api_key=settings.OPENAI_API_KEY)  # expect: untracked-sdk-client


def describe_product(request, product_id):
    response = client.chat.completions.create(
        model=settings.AI_MODEL,
        messages=[{"role": "user", "content": f"Describe product {product_id}"}],
    )
    AIUsageLog.objects.create(
        section="catalog",
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens,
    )
    return JsonResponse({"text": response.choices[0].message.content})


def debug_key(request):
    return JsonResponse({"key_prefix": settings.OPENAI_API_KEY[:7]})  # expect: provider-key-bypass
