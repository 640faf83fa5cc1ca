"""Qwen2.5-VL chat template with {% generation %} markers around each assistant turn (content, '<|im_end|>'
    and the newline after it), so that `return_assistant_tokens_mask` and TRL's `assistant_only_loss` work.
    Adapted from TRL 1.16 chat_templates/qwen2_5_vl_training.jinja (Apache-2.0); renders the same text as the
    original Qwen2.5-VL template."""

QWEN25VL_TRAINING_TEMPLATE = r'''{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- generation -%}
            {%- if message['content'] is string %}
                {{- message['content'] }}
            {%- else %}
                {%- for content in message['content'] %}
                    {%- if 'text' in content %}
                        {{- content['text'] }}
                    {%- endif %}
                {%- endfor %}
            {%- endif %}
            {{- '<|im_end|>\n' }}
        {%- endgeneration -%}
    {%- else %}
        {{- '<|im_start|>' + message['role'] + '\n' }}
        {%- if message['content'] is string %}
            {{- message['content'] }}
        {%- else %}
            {%- for content in message['content'] %}
                {%- if content['type'] == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content['type'] == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content['text'] }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''
